"""A report's sections: each a function of a ``context.Context`` that adds headings, findings,
figures and tables to the report; ``analysis.build`` holds the registry that orders them."""
