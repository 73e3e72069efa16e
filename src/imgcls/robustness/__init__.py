"""Robustness benchmarks: the pictures real users give a digit model, made from MNIST test digits
and from typefaces of people's handwriting; and the damaged photos a photo model meets (CIFAR-10-C)."""
