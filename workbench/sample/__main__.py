"""`python -m workbench.sample --out DIR --seed N [knobs]`."""

import sys

from workbench.sample.generate import main

sys.exit(main())
