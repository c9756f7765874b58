import sys

from sliceai.cli import main

sys.exit(main())
