"""An OpenAI-compatible chat-completions backend: the endpoint config, a retrying client, the mapping of the
shared decoding config onto request parameters (refusing what a server cannot honour), and resumable
generation that writes the same predictions artifact as local generation."""
