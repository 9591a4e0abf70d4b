// Patch overlap counts of a separable pair (every step maps x and y on their own: resize, crop, flip, pad, paste;
// about 70% of the descriptor preset's pairs). Each axis is mapped once (224 points, not 224 x 224), with the
// per-pixel path's arithmetic for that axis (overlap_steps.h, shortcut 2).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "overlap_steps.h"

namespace copynce {
namespace overlap_detail {
namespace {

// Destination pixel index of each of n source pixel centres along one axis (0 = x, 1 = y), -1 where invalid: the
// per-pixel loop's arithmetic for that axis alone (shortcut 2 of overlap_steps.h).
template <typename F>
void map_axis(const std::vector<Step<F>>& plan, int axis, int64_t n, int64_t dst_side, int32_t* pix) {
  const F lo = kLow<F>, magic = kRoundMagic<F>;
  for (int64_t k = 0; k < n; ++k) {
    F v = F(k) + F(0.5);
    bool ok = true;
    for (const Step<F>& s : plan) {
      if (s.kind == Kind::kSkip) continue;
      if (s.kind == Kind::kAxisAffine) v = axis == 0 ? s.m[0] * v + s.m[2] : s.m[4] * v + s.m[5];
      ok = ok && v >= lo && v < (axis == 0 ? s.hi_x : s.hi_y);
    }
    const int64_t p = ok ? int64_t((v * F(256) + magic) - magic) >> 8 : -1;
    pix[k] = p < dst_side ? int32_t(p) : -1;
  }
}

// Runs of equal values in each patch-sized band of v: (value, length) pairs, band by band (offsets in start).
struct BandRuns {
  std::vector<int32_t> value, length, start;
  BandRuns(const std::vector<int32_t>& v, int64_t patch) {
    for (int64_t b0 = 0; b0 < int64_t(v.size()); b0 += patch) {
      start.push_back(int32_t(value.size()));
      for (int64_t k = b0; k < b0 + patch; ++k) {
        if (k == b0 || v[k] != value.back()) {
          value.push_back(v[k]);
          length.push_back(0);
        }
        ++length.back();
      }
    }
    start.push_back(int32_t(value.size()));
  }
};

// Source positions grouped by destination pixel (a counting sort): positions of destination d are
// order[first[d] .. first[d + 1]).
struct Preimages {
  std::vector<int32_t> first, order;
  Preimages(const std::vector<int32_t>& pix, int64_t dst_side) : first(dst_side + 1, 0), order(pix.size()) {
    for (int32_t p : pix) {
      if (p >= 0) ++first[p + 1];
    }
    for (int64_t d = 0; d < dst_side; ++d) first[d + 1] += first[d];
    std::vector<int32_t> fill(first.begin(), first.end() - 1);
    for (int64_t k = 0; k < int64_t(pix.size()); ++k) {
      if (pix[k] >= 0) order[fill[pix[k]]++] = int32_t(k);
    }
  }
};

// Moves pixels from their destination patch j to the "no correspondence" column. Occluded pixels come in runs
// (text, strokes) whose neighbours share the count row and j, so equal moves are summed before touching memory.
struct Dropper {
  int32_t* counts;
  int32_t ld;
  int64_t row = 0;  // offset of the pending count row
  int32_t j = 0, n = 0;
  void add(int64_t at_row, int32_t at_j) {
    if (at_row != row || at_j != j) {
      flush();
      row = at_row;
      j = at_j;
    }
    ++n;
  }
  void flush() {
    counts[row + j] -= n;
    counts[row + ld] += n;
    n = 0;
  }
};

// fn(k) for every k in [0, n) with mask[k] true, 8 bytes at a time: occluders are sparse, so most words are zero
// and a set word is walked by its set bytes only.
template <typename Fn>
inline void for_each_set(const bool* mask, int64_t n, const Fn& fn) {
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    uint64_t word;
    std::memcpy(&word, mask + k, 8);  // bools are bytes 0 / 1: bit 8 * i is byte i
    while (word != 0) {
      fn(k + (lowest_bit(word) >> 3));
      word &= word - 1;
    }
  }
  for (; k < n; ++k) {
    if (mask[k]) fn(k);
  }
}

}  // namespace

// The unoccluded counts are products of per-axis run lengths (no per-pixel work); occluded pixels are then moved
// from their destination patch to the "no correspondence" column.
template <typename F>
void overlap_separable(const std::vector<Step<F>>& plan, const Grid& g, const bool* src_occ, const bool* dst_occ,
                       int32_t* counts) {
  std::vector<int32_t> col(g.src_w), row(g.src_h);
  map_axis(plan, 0, g.src_w, g.dst_w, col.data());
  map_axis(plan, 1, g.src_h, g.dst_h, row.data());
  std::vector<int32_t> jx(g.src_w), jy(g.src_h);  // the column / row part of the destination patch index
  for (int64_t c = 0; c < g.src_w; ++c) jx[c] = col[c] < 0 ? -1 : int32_t(col[c] / g.patch);
  for (int64_t r = 0; r < g.src_h; ++r) jy[r] = row[r] < 0 ? -1 : int32_t((row[r] / g.patch) * g.gd_w);
  const BandRuns rx(jx, g.patch), ry(jy, g.patch);
  const int64_t bins = g.ld + 1;
  for (int64_t pr = 0; pr < g.src_h / g.patch; ++pr) {
    for (int64_t pc = 0; pc < g.gs_w; ++pc) {
      int32_t* out = counts + (pr * g.gs_w + pc) * bins;
      int32_t valid = 0;
      for (int32_t a = ry.start[pr]; a < ry.start[pr + 1]; ++a) {
        if (ry.value[a] < 0) continue;
        for (int32_t b = rx.start[pc]; b < rx.start[pc + 1]; ++b) {
          if (rx.value[b] < 0) continue;
          const int32_t n = ry.length[a] * rx.length[b];
          out[ry.value[a] + rx.value[b]] += n;
          valid += n;
        }
      }
      out[g.ld] += int32_t(g.patch * g.patch) - valid;
    }
  }
  if (src_occ == nullptr && dst_occ == nullptr) return;
  // Offset of a source pixel's count row, in two parts (no division per pixel).
  std::vector<int64_t> row_off(g.src_h), col_off(g.src_w);
  for (int64_t r = 0; r < g.src_h; ++r) row_off[r] = (r / g.patch) * g.gs_w * bins;
  for (int64_t c = 0; c < g.src_w; ++c) col_off[c] = (c / g.patch) * bins;
  Dropper drop{counts, int32_t(g.ld)};
  if (src_occ != nullptr) {  // valid source pixels that are occluded
    for (int64_t r = 0; r < g.src_h; ++r) {
      if (jy[r] < 0) continue;
      const int64_t at_row = row_off[r];
      const int32_t at_jy = jy[r];
      for_each_set(src_occ + r * g.src_w, g.src_w, [&](int64_t c) {
        if (jx[c] >= 0) drop.add(at_row + col_off[c], at_jy + jx[c]);
      });
    }
  }
  if (dst_occ != nullptr) {  // valid source pixels (not occluded themselves) landing on an occluded pixel
    const Preimages pre_r(row, g.dst_h), pre_c(col, g.dst_w);
    for (int64_t rd = 0; rd < g.dst_h; ++rd) {
      const int32_t a0 = pre_r.first[rd], a1 = pre_r.first[rd + 1];
      if (a0 == a1) continue;
      for_each_set(dst_occ + rd * g.dst_w, g.dst_w, [&](int64_t cd) {
        for (int32_t a = a0; a < a1; ++a) {
          const int32_t r = pre_r.order[a];
          const bool* src_row = src_occ ? src_occ + r * g.src_w : nullptr;
          for (int32_t b = pre_c.first[cd]; b < pre_c.first[cd + 1]; ++b) {
            const int32_t c = pre_c.order[b];
            if (src_row == nullptr || !src_row[c]) drop.add(row_off[r] + col_off[c], jy[r] + jx[c]);
          }
        }
      });
    }
  }
  drop.flush();
}

template void overlap_separable<float>(const std::vector<Step<float>>&, const Grid&, const bool*, const bool*,
                                       int32_t*);
template void overlap_separable<double>(const std::vector<Step<double>>&, const Grid&, const bool*, const bool*,
                                        int32_t*);

}  // namespace overlap_detail
}  // namespace copynce
