"""The policy server (`uio2 serve`) and its thin client (`remote://HOST:PORT`).

One process owns the model and serves many sessions (one episode of one client each); concurrent
sessions' steps are batched into one model call. `client.py` and `protocol.py` need only numpy,
msgpack and websockets, so robots and simulator workers can import them without jax; nothing here
imports the heavy modules at package import time.
"""
