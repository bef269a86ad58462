"""`xmr serve`: the HTTP API and web page over a warm library, and how the CLI finds it.

Nothing heavy is imported here: `discovery` and `client` are used by `xmr search` before it
knows whether it needs the model.
"""
