"""The trainer: datasets, the torch model, fitting, and the bootstrap / train commands."""

import os

# OpenMP threads that spin while waiting slow torch down by an order of magnitude when the
# cores are shared (service, Redis, other trainers on 2 cores, measured): let them sleep.
# It must be set before torch loads OpenMP, hence here; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
