"""JSON-RPC 2.0's pure core: parse, validate, bind params, encode responses."""
