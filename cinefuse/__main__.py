import sys

from cinefuse.cli import main

sys.exit(main())
