"""Validates Payrail's OpenAPI document: openapi-spec-validator against the OpenAPI 3.1 schema,
then every `pattern` compiled as a regular expression (the document must hold no pattern a
client's validator would choke on).

Usage: check_openapi.py URL
"""

import json
import re
import sys
import urllib.request

from openapi_spec_validator import validate


def patterns(node, where="#"):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield where, value
            else:
                yield from patterns(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from patterns(value, f"{where}/{index}")


def main(url):
    with urllib.request.urlopen(url) as response:
        document = json.load(response)
    validate(document)
    found = list(patterns(document))
    for where, pattern in found:
        try:
            re.compile(pattern)
        except re.error as err:
            sys.exit(f"{where}: pattern {pattern!r} does not compile: {err}")
    print(f"{url}: valid OpenAPI {document['openapi']}, {len(document['paths'])} paths, {len(found)} patterns")


if __name__ == "__main__":
    main(sys.argv[1])
