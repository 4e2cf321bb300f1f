import sys

from ausweep.cli import main

sys.exit(main())
