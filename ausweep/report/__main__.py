import sys

from ausweep.report.cli import main

sys.exit(main())
