"""``python -m ausweep.adapt``: deprecated; runs ``python -m ausweep.audiobert`` with the same arguments."""

import sys

from ausweep.audiobert.__main__ import main

if __name__ == "__main__":
    print("ausweep.adapt is now ausweep.audiobert: use `python -m ausweep.audiobert ...`", file=sys.stderr)
    sys.exit(main())
