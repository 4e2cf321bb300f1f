"""``python -m ausweep.lalm.train``: see :mod:`ausweep.lalm.train.cli`.

Only imports and calls: Ray pickles functions and classes of ``__main__`` by value, and the workers
could not resolve TrainConfig's type hints in a copy defined here.
"""

import sys

from ausweep.lalm.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
