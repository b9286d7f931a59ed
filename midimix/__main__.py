import sys

from midimix.cli import main

sys.exit(main())
