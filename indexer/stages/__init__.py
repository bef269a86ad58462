"""An index run as four stages, each behind one small interface (indexer.pipeline composes them):

    PLAN    scan the roots, diff against the catalog: new / changed / moved / gone   (plan.py)
    DECODE  a file -> its kind's segments, prepared for every model that embeds them;
            run by threads, processes or Ray tasks behind one interface              (decode.py,
            one decode context for all of them: context.py; the schedulers: decoders.py)
    EMBED   segments batched per embedder, for the main model and every added model in
            the same pass (one registry), on the GPU with halving on out-of-memory  (embed.py)
    WRITE   the one writer: rows -> ids -> vectors -> checkpoints                      (write.py)

Options travel as one `IndexOptions` (options.py); progress and skipped files go to a
`Reporter` (report.py), whose terminal form lives in the CLI.
"""
