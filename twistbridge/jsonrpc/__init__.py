"""
Drop-in replacement for flaskJSONRPCServer: C{from twistbridge.jsonrpc import
JSONRPCServer} (alias C{flaskJSONRPCServer}).
"""
