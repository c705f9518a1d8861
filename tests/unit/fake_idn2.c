/* Stands in for libidn2.so.0 in one CLI test: a library of that name that
   lacks idn2_to_ascii_8z, as a broken or foreign install would. */
int mailsuspend_fake_idn2_marker;
