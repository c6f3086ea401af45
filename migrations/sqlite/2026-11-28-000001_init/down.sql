DROP TABLE reports; DROP TABLE assignments; DROP TABLE artifacts; DROP TABLE devices;
