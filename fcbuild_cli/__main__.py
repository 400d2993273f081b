import sys

from fcbuild_cli.main import main

sys.exit(main())
