"""Plans: segwatch starts runs for you, in order, with gates (serial Plan B) or side by side
(sweeps). See app.plan.start (the `segwatch run` options), app.plan.scheduler (the detached
process that runs the queue), app.plan.gate (the gate language), app.plan.model (the files)."""
