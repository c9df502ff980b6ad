import sys

from acprop_tuner.cli import main

sys.exit(main())
