import sys

from nvfp4_kernels.cli import main

sys.exit(main())
