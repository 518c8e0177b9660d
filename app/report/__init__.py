"""`segwatch report`: the plan's report tables, built from the run records (app.runlib), so every
number is the one the trainer wrote. collect.py reads the runs, tables.py builds the tables,
render.py writes Markdown and terminal tables, figures.py draws PNGs (matplotlib) or text plots."""
