# The Exim snippets as installed: conf/exim/<name> without its comment and
# blank lines.  Exim reads an .include'd file in every process it starts (a
# delivery, a local submission, a queue runner), and each physical line
# costs about 800 instructions there (it is searched for every macro, Exim's
# own 850 included): the comments were 116 k of each fresh process
# (bench/results/2026-12-05-lazy.md).  The commented file is installed as
# documentation.  A line inside a continued line ("\" at the end of the one
# before) is kept whatever it is, as Exim would read it.
#   awk -v name=NAME -v out=FILE -f strip-comments.awk conf/exim/NAME
BEGIN {
	print "# " name " (commented: /usr/share/doc/mailsuspend/exim/" name ")" > out
}
!continued && /^[ \t]*(#|$)/ { next }
{
	print > out
	continued = /\\$/
}
