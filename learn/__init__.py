"""Code for a learner to type and check: blocks.py holds the two residual blocks without the
package's ablation flags; solutions.py holds the reference answers to the tutorial's exercises
(tests/test_exercises.py keeps both true against resnet_scratch)."""
