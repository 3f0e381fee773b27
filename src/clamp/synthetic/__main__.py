"""``python -m clamp.synthetic``: write a synthetic dataset (see :mod:`clamp.synthetic.datasets`)."""

from clamp.synthetic.datasets import main

main()
