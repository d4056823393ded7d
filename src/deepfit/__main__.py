import sys

from deepfit.cli import main

sys.exit(main())
