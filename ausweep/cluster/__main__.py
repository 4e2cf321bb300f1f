import sys

from ausweep.cluster.cli import main

sys.exit(main())
