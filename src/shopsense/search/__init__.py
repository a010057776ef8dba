"""Product search, laid out as Meilisearch's milli is: building and changing
an index apart from answering queries, each stage in a module named for it.

- ``index/``: ``settings`` (the knobs saved with an index), ``build`` (a
  catalogue into a new index folder), ``updates`` (items added, replaced or
  deleted, an encoder swapped, without a rebuild);
- ``query/``: ``plan`` (a query read into weighted terms, corrections and
  compounds), ``retrieve`` (lexical and semantic candidates, ``fusion``
  merging them), ``personalize``, ``present`` (sort, page, hits, highlights),
  ``neighbours`` (items like an item), ``log`` (the search events);
- ``ranking/``: the learnt re-ranker's ``features`` (over a small context,
  not the engine), its ``model`` and its ``training``;
- ``engine``: ``SearchEngine``, the facade that opens an index folder and runs
  a query through the stages.

The storage each stage reads stays at this level, one module per structure:
``catalog`` (item columns, filters, facets), ``lexical`` (tantivy),
``semantic`` (faiss vectors, the query encoder), ``typo`` (the vocabulary),
``suggest`` (autocomplete), ``profiles`` (users' tastes), ``titles`` (title
terms as ids), with ``analysis`` (how text becomes terms).
"""
