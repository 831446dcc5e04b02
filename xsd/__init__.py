"""The hub's own XML schemas, one folder per agency (see README.md).

A package only so that the schemas travel with the installed hub;
`adapters.xml` loads them from here, and from nowhere else.
"""
