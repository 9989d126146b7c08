"""`python -m mnist_gpu` runs the command line."""
from .entry import main_exit

main_exit()
