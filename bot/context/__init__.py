"""Context gathering: the references in a question, read from GitHub and Linear before answering."""
