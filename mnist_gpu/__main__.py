"""`python -m mnist_gpu` runs the command line."""
from .cli import main_exit

main_exit()
