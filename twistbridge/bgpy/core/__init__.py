"""
bgpy's C{bgpy.core} names, for programs (and init files) that import
them: C{from twistbridge.bgpy.core.token import token_create}.
"""
