import sys

try:  # a Ctrl-C while the program is still being imported is an interruption, not a traceback
    from lab.cli import main

    code = main()
except KeyboardInterrupt:
    sys.stderr.write("lab: interrupted\n")
    code = 130
sys.exit(code)
