"""InfoNCE and KoLeo references against loop-based oracles."""
import math

import pytest
import torch
import torch.nn.functional as F

from copynce_fast.ops.infonce import infonce_ref
from copynce_fast.ops.koleo import koleo_ref


def test_infonce_matches_a_row_by_row_oracle():
    n, m, D = 4, 3, 8
    f = F.normalize(torch.randn(2 * n + m, D), dim=1)
    ls = torch.tensor(2.0)
    total = 0.0
    for i in range(2 * n):
        logits = [math.exp(2.0) * (-1.0 if j == i else float(f[i] @ f[j])) for j in range(2 * n + m)]
        pos = i + n if i < n else i - n
        total += -(logits[pos] - math.log(sum(math.exp(v) for v in logits)))
    assert math.isclose(infonce_ref(f, n, ls).item(), total / (2 * n), rel_tol=1e-5)


def test_infonce_gradient_reaches_log_scale_and_bad_args_are_named():
    f = F.normalize(torch.randn(6, 4), dim=1)
    ls = torch.tensor(3.2, requires_grad=True)
    infonce_ref(f, 3, ls).backward()
    assert ls.grad is not None and ls.grad != 0
    with pytest.raises(ValueError, match="num_pos"):
        infonce_ref(f, 4, ls)
    with pytest.raises(ValueError, match="feats"):
        infonce_ref(torch.randn(6), 1, ls)


def test_koleo_matches_an_oracle_and_ignores_positive_partners():
    n, D = 3, 5
    f = F.normalize(torch.randn(2 * n + 2, D), dim=1)
    vals = []
    for i in range(f.shape[0]):
        best = max(float(f[i] @ f[j]) for j in range(f.shape[0])
                   if j != i and not (i < 2 * n and j == (i + n) % (2 * n)))
        vals.append(-math.log(math.sqrt(max(2 - 2 * best, 1e-6))))
    assert math.isclose(koleo_ref(f, n).item(), sum(vals) / len(vals), rel_tol=1e-5)


def test_koleo_is_lower_for_spread_points():
    spread = torch.eye(4)
    clumped = F.normalize(torch.eye(4) + 3.0, dim=1)
    assert koleo_ref(spread) < koleo_ref(clumped)
