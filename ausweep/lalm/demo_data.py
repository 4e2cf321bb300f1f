"""``python -m ausweep.lalm.demo_data OUT``: deprecated; the demo sets moved to :mod:`ausweep.data.demo_mc`."""

import sys

if __name__ == "__main__":
    from ausweep.data.demo_mc import main

    print("ausweep.lalm.demo_data is now ausweep.data.demo_mc: use `python -m ausweep.data.demo_mc OUT`", file=sys.stderr)
    sys.exit(main())
