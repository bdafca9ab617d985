"""A Bridge whose /opted path writes Decimals and dates as text; /plain does not."""

import datetime
import decimal

from twistbridge import Bridge


def values():
    return {
        "price": decimal.Decimal("10.50"),
        "day": datetime.date(2024, 2, 29),
        "at": datetime.datetime(2024, 2, 29, 13, 5, 7, 250),
        "plain": [1, "two"],
    }


def as_text(obj):
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if isinstance(obj, (datetime.date, datetime.datetime)):
        return obj.isoformat()
    raise TypeError(f"{type(obj).__name__} is not JSON")


bridge = Bridge()
bridge.rpc_function(values, path="/plain")
bridge.rpc_function(values, path="/opted")
bridge.rpc_path("/opted", json_default=as_text, jsonp=True)
