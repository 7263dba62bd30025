"""What each command does: eval, parity, bench, predict, autolabel, labels check, export.

Tasks sit above every library layer (data, models, runtime, trainer, calibration,
export) and below the command line, which only parses options and prints.
"""
