"""Data shipped with specguard: built-in safety specifications, taxonomies and example
policies. Read with importlib.resources.files("specguard.specs")."""
