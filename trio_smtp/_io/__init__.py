"""The I/O layer: the one stream to the server (:mod:`.transport`), its deadlines, the
protocol log, proxies and the local host name.  Knows SMTP only through ``protocol``."""
