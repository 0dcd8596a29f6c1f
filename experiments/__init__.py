"""Experiments: the same workload under each invocation policy, recorded per call and plotted.

    python -m experiments          # run + plot at the default (small) size
    python -m experiments run      # run only: experiments/out/calls.csv
    python -m experiments plot     # plot only: experiments/out/*.png, summary.csv

See docs/experiments.md.
"""
