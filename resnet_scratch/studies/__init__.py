"""Studies: what one particular question adds to the generic trainer and scorer (see resnet_scratch/study.py)."""
