import sys

from localfc.server import main

sys.exit(main(sys.argv[1:]))
