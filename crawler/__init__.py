"""crawler: a resumable, polite bulk fetcher that streams results to WARC + JSONL.

The data path, one module (or package) per step; `crawl.assemble` builds the parts into one
frozen `Pipeline`, `crawl.Crawl` runs it (`cli` for `run`, `serve` adds `api` and `inbox`):

    seeds / inbox / api  --URLs-->  frontier/          durable queue: claims with a lease,
                                       |               fenced commits (values.py: its types)
                                       v
                                    scheduler          per-host slots: politeness, health,
                                       |  Entry        robots.txt pacing (politeness, dns)
                                       v
    robots  <--  worker  --GET-->  fetcher/            httpx2 clients, guard, auth, caps
                   |                  |  Response
                   |  <---------------+
                   v
                 judge                 retry verdicts, redirect hops, links (links, scope, seen)
                   |  Outcome
                   v
                 committer  --records-->  output/     WARC + JSONL, in a child process
                   |
                   +--one transaction: states, new URLs, output lengths--> frontier/

Nothing is final until the committer's transaction records it together with the committed
length of the output files: a crash anywhere loses or repeats nothing (`output.process`
cuts the files back to that length on the next start).
"""

__version__ = "0.1.0"
