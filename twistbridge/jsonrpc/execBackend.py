"""
flaskJSONRPCServer's C{execBackend} package has no counterpart here:
importing it says what to use instead.
"""

raise ImportError(
    "flaskJSONRPCServer's exec backends (execBackend_parallelWithSocket...) do "
    "not exist on twistbridge: register the functions with "
    "dispatcherBackend='parallelWithSocket' or run_in='process' (its process "
    "pool, sized by processes=N) instead"
)
