"""What initlab costs, measured side by side with its baselines; outside the package.

`python -m benchmarks` (from the repository root) prints the tables of the README's
Performance section; `python benchmarks/first_chart.py` times the app's first chart in a browser.
"""
