"""A broken echo server: floods its output (and never serves)."""
while True:
    print("spam " * 200)
