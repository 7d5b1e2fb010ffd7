"""`harness serve`: the local reference endpoint of the seed API (sampler + fault injection).

    model.py       the LanguageModel/Session protocol between the endpoint and a model
    sampler.py     pure numpy sampling (penalties, temperature, min_p, top_k, top_p, logprobs)
    generate.py    one completion: sampling loop, stop sequences, logprobs, finish reasons
    tokenizer.py   word-level tokenizer of the built-in model
    corpus.py      the built-in model's training text (data/)
    ngram.py       the built-in model: an interpolated word 8-gram
    validation.py  request body -> ChatRequest, every seed limit (400s)
    payloads.py    OpenAI wire format: errors, completions, stream chunks
    faults.py      seeded fault injection and latency specs
    app.py         the aiohttp app, ServerThread / running / serve
"""
