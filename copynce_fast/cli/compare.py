"""stub"""
def add_parser(subparsers):
    subparsers.add_parser("compare")
def run(args):
    return 0
