"""Data: jsonl reading and validation, tokenization with loss masks, chunking, packing, bins, arrow shards."""
