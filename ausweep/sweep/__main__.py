import sys

from ausweep.sweep.cli import main

sys.exit(main())
