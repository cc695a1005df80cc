"""The WASM parser: an expression language parsed by C compiled to wasm32 under wasmtime,
and by the same algorithm in pure Python as the baseline it is measured against.

``WasmParser().parse(text)`` and ``pyparser.parse(text)`` return equal ``FlatAst``s or
raise equal ``ParseError``s; :mod:`loadkit.workloads.wasm.language` describes the language and
:mod:`loadkit.workloads.wasm.packed` the packed node layout the WASM side hands over.
"""
