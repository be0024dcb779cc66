"""The reward-hacking coding environment: problems, prompts, modes, sandbox and grader.

This package never imports torch: the grader must be cheap to import and to run.
"""
